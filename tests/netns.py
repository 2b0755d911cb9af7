"""Test hosts as Linux network namespaces: a bridge in the test's own namespace holds the first address of a private
/24 the test picks, and each host is a namespace linked to that bridge by a veth pair. A host reaches only the /24
(it has no other route); its link is cut and restored on the bridge's side, so its processes live on, unreachable."""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (the reason a test skips with), or None."""
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's `ip` (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add`, veth pairs, a bridge); run the suite as root or in CI"
    probe = f"sq-probe-{uuid.uuid4().hex[:6]}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed (no CAP_SYS_ADMIN in this container?): {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that overlaps no address or route of this machine."""
    taken = []
    for line in ip("-o", "-4", "addr").stdout.splitlines() + ip("-4", "route").stdout.splitlines():
        for word in line.split():
            if word[0].isdigit() and "." in word:
                try:
                    taken.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    pass
    for _ in range(100):
        subnet = ipaddress.ip_network(f"10.{random.randint(100, 254)}.{random.randint(1, 254)}.0/24")
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise RuntimeError(f"no free 10.x.y.0/24 here: {taken}")


@dataclass
class Namespace:
    """One test host's network: namespace ``name``, its end ``inside`` of a veth pair with address ``address``, and
    the other end ``outside`` on the bridge."""

    name: str
    address: str
    outside: str
    inside: str

    @property
    def prefix(self) -> list[str]:
        """Run a command in this namespace (``ip netns exec`` execs it: the pid is the command's own)."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Cut the link on the bridge's side: the host's processes run on, but nothing reaches them or leaves."""
        ip("link", "set", self.outside, "down")

    def restore(self) -> None:
        ip("link", "set", self.outside, "up")

    def pids(self) -> list[int]:
        found = ip("netns", "pids", self.name, check=False).stdout.split()
        return [int(p) for p in found]

    def kill(self) -> None:
        """SIGKILL what runs in the namespace (all of it started by the test) and wait until it is gone."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        """Kill what runs in the namespace, then delete it and its veth pair."""
        self.kill()
        ip("link", "del", self.outside, check=False)
        ip("netns", "del", self.name, check=False)


@dataclass
class Network:
    """A bridge with a private /24 in the test's own namespace, and the hosts linked to it."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    subnet: ipaddress.IPv4Network = field(default_factory=free_subnet)
    hosts: list[Namespace] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"sq{self.tag}br"  # interface names: 15 characters at most

    @property
    def gateway(self) -> str:
        """The bridge's address: what the hosts reach the test's own servers at."""
        return str(self.subnet.network_address + 1)

    def up(self) -> Network:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        return self

    def add_host(self) -> Namespace:
        n = len(self.hosts) + 1
        host = Namespace(
            name=f"sq-{self.tag}-{n}",
            address=str(self.subnet.network_address + 1 + n),
            outside=f"sq{self.tag}{n}o",
            inside=f"sq{self.tag}{n}i",
        )
        self.hosts.append(host)
        ip("netns", "add", host.name)
        ip("link", "add", host.outside, "type", "veth", "peer", "name", host.inside)
        ip("link", "set", host.inside, "netns", host.name)
        ip("link", "set", host.outside, "master", self.bridge)
        ip("link", "set", host.outside, "up")
        inside = ["netns", "exec", host.name, "ip"]
        ip(*inside, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", host.inside)
        ip(*inside, "link", "set", host.inside, "up")
        ip(*inside, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.close()
        ip("link", "del", self.bridge, check=False)
