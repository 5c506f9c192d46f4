"""The public port's HTTP/1.1 server: `listener` accepts, `connection` parses and writes,
`request` is what the gateway is handed."""
