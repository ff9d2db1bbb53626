#!/usr/bin/env python3
"""An independent check of a SPIFFE bundle document (SPIFFE Trust Domain and
Bundle §4, X509-SVID §6), written from the specifications, not from
quicmesh's code. Reads the document from a file (or `-` for stdin), or
fetches it (`--url https://...`, with `--cafile` for the server's root and
no hostname check, since an https_spiffe endpoint is named by its SPIFFE
ID, not its host). Prints a JSON summary; exits 1 with the reasons when
the document breaks a rule.

Checked: a JSON object; `keys` an array; `spiffe_sequence` and
`spiffe_refresh_hint`, when present, non-negative integers; each
`x509-svid` key with `kty`, no `kid`, exactly one `x5c` value in standard
base64 that is a DER CA certificate, and key parameters (`crv`/`x`/`y` for
EC, `n`/`e` for RSA, unpadded base64url) equal to its public key's."""
import argparse
import base64
import json
import ssl
import sys
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64url_uint(n):
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_fixed(n, size):
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()


def check(doc):
    errors = []
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"], 0
    keys = doc.get("keys")
    if not isinstance(keys, list):
        errors.append("keys is missing or not an array")
        keys = []
    for member in ("spiffe_sequence", "spiffe_refresh_hint"):
        v = doc.get(member)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            errors.append(f"{member} is not a non-negative integer: {v!r}")
    roots = 0
    for i, k in enumerate(keys):
        if not isinstance(k, dict):
            errors.append(f"keys[{i}] is not an object")
            continue
        if k.get("use") != "x509-svid":
            continue
        if "kid" in k:
            errors.append(f"keys[{i}]: an x509-svid key must not have kid")
        x5c = k.get("x5c")
        if not isinstance(x5c, list) or len(x5c) != 1:
            errors.append(f"keys[{i}]: x5c must hold exactly one certificate")
            continue
        try:
            der = base64.b64decode(x5c[0], validate=True)
            cert = x509.load_der_x509_certificate(der)
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            errors.append(f"keys[{i}]: x5c[0] is not a base64 DER certificate: {e}")
            continue
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            if not bc.ca:
                errors.append(f"keys[{i}]: not a CA certificate")
        except x509.ExtensionNotFound:
            errors.append(f"keys[{i}]: no basic constraints")
        pub = cert.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            size = (pub.curve.key_size + 7) // 8
            crv = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(pub.curve.name)
            nums = pub.public_numbers()
            want = {"kty": "EC", "crv": crv, "x": b64url_fixed(nums.x, size), "y": b64url_fixed(nums.y, size)}
        elif isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            want = {"kty": "RSA", "n": b64url_uint(nums.n), "e": b64url_uint(nums.e)}
        else:
            want = {}
        for name, value in want.items():
            if k.get(name) != value:
                errors.append(f"keys[{i}]: {name} does not match the certificate's public key")
        roots += 1
    if roots == 0:
        errors.append("no x509-svid key")
    return errors, roots


def main():
    p = argparse.ArgumentParser()
    p.add_argument("path", nargs="?", default="-")
    p.add_argument("--url")
    p.add_argument("--cafile")
    a = p.parse_args()
    if a.url:
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.check_hostname = False
        with urllib.request.urlopen(a.url, context=ctx, timeout=10) as r:
            content_type = r.headers.get("content-type")
            raw = r.read(1 << 20)
    else:
        content_type = None
        raw = sys.stdin.buffer.read() if a.path == "-" else open(a.path, "rb").read()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError as e:
        print(json.dumps({"ok": False, "errors": [f"not UTF-8 JSON: {e}"]}))
        sys.exit(1)
    errors, roots = check(doc)
    print(json.dumps({
        "ok": not errors,
        "errors": errors,
        "roots": roots,
        "spiffe_sequence": doc.get("spiffe_sequence") if isinstance(doc, dict) else None,
        "spiffe_refresh_hint": doc.get("spiffe_refresh_hint") if isinstance(doc, dict) else None,
        "content_type": content_type,
    }))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
