"""The public port's HTTP/1.1 server: `listener` accepts, `connection` answers one client
connection through the `reader` of its bytes (in the `phase` it is in), and `request` is what
the gateway is handed; each request writes its own answer."""
