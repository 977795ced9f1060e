"""The control plane's private certificate authority: the broker's TLS certificate and node client certificates."""
