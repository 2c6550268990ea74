"""The network: the fetcher and what it keeps every request within (the address guard,
cookie jars, proxies, TLS trust, bounded decoding)."""
