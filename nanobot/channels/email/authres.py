"""Sender authentication from the receiving server's Authentication-Results header (RFC 8601).

From is trivially forged, so a message is believed to come from its From address only when a
server we trust says so: the TOPMOST Authentication-Results header whose authserv-id is in
`trustedAuthservIds` must report
  * dkim=pass with header.d (or header.i) aligned with the From domain (when verifyDkim), or
  * spf=pass with smtp.mailfrom aligned with the From domain (when verifySpf), or
  * dmarc=pass with header.from equal to the From domain (DMARC itself requires an aligned pass).
"Aligned" is relaxed alignment without a public-suffix list: the same domain, or one a
subdomain of the other where the shorter still has a dot (mail.example.com ~ example.com).

Headers from any other authserv-id are ignored, and so is every trusted header below the
topmost one: the receiving server adds its header on top, so a forged copy a sender wrote into
the message is always below it. This relies on the trusted server stamping EVERY message it
accepts (RFC 8601 §5), which is why only the receiving server's own id belongs in the list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    method: str  # "dkim", "spf", "dmarc", …
    result: str  # "pass", "fail", …
    props: dict[str, str]


def _strip_comments(value: str) -> str:
    """value without (comments), nested ones too; quoted strings are kept as they are."""
    out, depth, quoted, escaped = [], 0, False, False
    for c in value:
        if escaped:
            escaped = False
            if not depth:
                out.append(c)
            continue
        if c == "\\":
            escaped = True
            if not depth:
                out.append(c)
        elif quoted:
            quoted = c != '"'
            out.append(c)
        elif c == '"' and not depth:
            quoted = True
            out.append(c)
        elif c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(c)
    return "".join(out)


def _split(value: str, sep: str) -> list[str]:
    parts, cur, quoted = [], [], False
    for c in value:
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def parse(value: str) -> tuple[str, list[Result]]:
    """(authserv-id lower-cased, results) of one header value; ("", []) when unreadable."""
    segments = _split(_strip_comments(value), ";")
    head = segments[0].split()
    if not head:
        return "", []
    results = []
    for seg in segments[1:]:
        seg = " ".join(seg.replace(" =", "=").replace("= ", "=").split())
        tokens = seg.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props = {}
        for tok in tokens[1:]:
            k, eq, v = tok.partition("=")
            if eq and k.lower() != "reason":
                props.setdefault(k.lower(), v.strip('"').lower())
        results.append(Result(method.split("/")[0].lower(), result.lower(), props))
    return head[0].lower(), results


def aligned(auth_domain: str, from_domain: str) -> bool:
    a, f = auth_domain.strip(".").lower(), from_domain.strip(".").lower()
    if not a or not f:
        return False
    if a == f:
        return True
    shorter, longer = (a, f) if len(a) < len(f) else (f, a)
    return "." in shorter and longer.endswith("." + shorter)


def _domain(value: str) -> str:
    return value.rpartition("@")[2]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    why: str  # for the log and the audit trail


def check(
    headers: list[str], from_domain: str, trusted: list[str], *, dkim: bool, spf: bool
) -> Verdict:
    """Whether the topmost trusted Authentication-Results header vouches for from_domain.

    `headers` are the message's Authentication-Results values, topmost first.
    """
    ids = {t.strip().lower() for t in trusted if t.strip()}
    for value in headers:
        authserv, results = parse(value)
        if authserv not in ids:
            continue
        seen = []
        for r in results:
            seen.append(f"{r.method}={r.result}")
            if r.result != "pass":
                continue
            if r.method == "dkim" and dkim:
                d = r.props.get("header.d") or _domain(r.props.get("header.i", ""))
                if aligned(d, from_domain):
                    return Verdict(True, f"{authserv}: dkim=pass (d={d})")
            elif r.method == "spf" and spf:
                mf = _domain(r.props.get("smtp.mailfrom", ""))
                if aligned(mf, from_domain):
                    return Verdict(True, f"{authserv}: spf=pass (mailfrom {mf})")
            elif (
                r.method == "dmarc"
                and (dkim or spf)
                and r.props.get("header.from", "") == from_domain.lower()
            ):
                return Verdict(True, f"{authserv}: dmarc=pass")
        shown = ", ".join(seen) or "no results"
        return Verdict(False, f"{authserv} reports {shown}, no aligned pass for {from_domain}")
    return Verdict(False, "no Authentication-Results header from a server in trustedAuthservIds")
