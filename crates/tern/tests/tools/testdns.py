"""DNS lookups for dkimpy against the test's DNS server (`IP:PORT`), so the
tools in this folder fetch keys only from the zones a test programmed."""
import dns.resolver


def dnsfunc_for(addr):
    host, port = addr.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        answer = resolver.resolve(name, "TXT", lifetime=timeout)
        return b"".join(answer[0].strings)

    return dnsfunc
