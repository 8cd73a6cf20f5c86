#!/usr/bin/env python3
"""Write the legacy password hashes that the Go password package is tested
against: proxy/internal/password/testdata/legacy-hashes.jsonl.

Why: imported users keep the hashes their old system made, and the proxy
must verify them with its own code. A Go test that checks Go's verification
against hashes that Go made would only show the code agrees with itself, so
these hashes come from the implementations that real systems use: Django's
password hashers (through make_password), the Python bcrypt package and
argon2-cffi. The output is committed; the Go tests do not run Python.

Needs Debian's python3-django, python3-bcrypt and python3-argon2:

    apt-get install python3-django python3-bcrypt python3-argon2
    scripts/legacy-hashes.py

Each run writes new salts, so the file changes whenever it is rerun; that is
fine, the tests only need every line to verify.

Work factors are the smallest each implementation allows (or close), so
that the tests stay fast, except for pbkdf2_sha256, which is also written at
Django's own default iterations (the Go tests bound what a newer Django's
default would carry, without paying for its hash under the race detector).
"""

import base64
import hashlib
import json
import os
import sys

from django.conf import settings

settings.configure(
    PASSWORD_HASHERS=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "django.contrib.auth.hashers.BCryptPasswordHasher",
    ]
)

import argon2  # noqa: E402  (after settings, like the Django imports)
import bcrypt  # noqa: E402
import django  # noqa: E402
from django.contrib.auth import hashers  # noqa: E402

PINS = ["1234", "0000", "482916"]
# One password that is not ASCII, to show both sides hash its UTF-8 bytes.
PASSPHRASE = "pässwörd 7"


class FastPBKDF2(hashers.PBKDF2PasswordHasher):
    iterations = 1000


class FastPBKDF2SHA1(hashers.PBKDF2SHA1PasswordHasher):
    iterations = 1000


class FastArgon2(hashers.Argon2PasswordHasher):
    time_cost = 1
    memory_cost = 64
    parallelism = 2


class FastBCryptSHA256(hashers.BCryptSHA256PasswordHasher):
    rounds = 4


class FastBCrypt(hashers.BCryptPasswordHasher):
    rounds = 4


class ScryptFormat:
    """Django's scrypt format, for a Django that lacks ScryptPasswordHasher.

    Django added ScryptPasswordHasher in 4.0, and Debian 12 ships Django
    3.2. This writes what Django 4.0+ writes: scrypt$N$salt$r$p$hash, with
    the salt's text bytes as scrypt's salt, a 64-byte key and the key in
    padded standard base64. The scrypt itself is Python's hashlib.scrypt
    (OpenSSL), not Go's; only the layout is transcribed here.
    """

    algorithm = "scrypt"

    def __init__(self, n, r, p):
        self.n, self.r, self.p = n, r, p

    def salt(self):
        return hashers.BasePasswordHasher().salt()

    def encode(self, password, salt):
        key = hashlib.scrypt(
            password.encode(),
            salt=salt.encode(),
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=256 * 1024 * 1024,
            dklen=64,
        )
        b64 = base64.b64encode(key).decode("ascii")
        return "%s$%d$%s$%d$%d$%s" % (self.algorithm, self.n, salt, self.r, self.p, b64)


def scrypt_hasher(n, r, p):
    """Django's own ScryptPasswordHasher when this Django has it."""
    real = getattr(hashers, "ScryptPasswordHasher", None)
    if real is None:
        return ScryptFormat(n, r, p), "scrypt format transcribed (Django %s has none)" % django.get_version()

    class FastScrypt(real):
        work_factor = n
        block_size = r
        parallelism = p

    return FastScrypt(), "Django %s ScryptPasswordHasher" % django.get_version()


def django_hashes(out):
    scrypt, scrypt_source = scrypt_hasher(2**10, 8, 2)
    for fmt, hasher, passwords in [
        ("django-pbkdf2_sha256", FastPBKDF2(), PINS + [PASSPHRASE]),
        # Django's own default iterations (260,000 in Django 3.2).
        ("django-pbkdf2_sha256-default", hashers.PBKDF2PasswordHasher(), PINS[:1]),
        ("django-pbkdf2_sha1", FastPBKDF2SHA1(), PINS + [PASSPHRASE]),
        ("django-argon2", FastArgon2(), PINS + [PASSPHRASE]),
        ("django-bcrypt_sha256", FastBCryptSHA256(), PINS + [PASSPHRASE]),
        ("django-bcrypt", FastBCrypt(), PINS + [PASSPHRASE]),
        ("django-scrypt", scrypt, PINS + [PASSPHRASE]),
    ]:
        for pw in passwords:
            encoded = hashers.make_password(pw, hasher=hasher)
            if fmt != "django-scrypt" or scrypt_source.startswith("Django"):
                # Django's own check, so that a line never carries a hash
                # its own implementation would refuse.
                assert hashers.check_password(pw, encoded), (fmt, encoded)
                assert not hashers.check_password(pw + "9", encoded), (fmt, encoded)
            out.append({"format": fmt, "password": pw, "hash": encoded})
    print("django-scrypt: " + scrypt_source, file=sys.stderr)


def bcrypt_hashes(out):
    for pw in PINS + [PASSPHRASE]:
        b = pw.encode()
        h2b = bcrypt.hashpw(b, bcrypt.gensalt(rounds=4, prefix=b"2b")).decode("ascii")
        h2a = bcrypt.hashpw(b, bcrypt.gensalt(rounds=5, prefix=b"2a")).decode("ascii")
        for h in (h2b, h2a):
            assert bcrypt.checkpw(b, h.encode())
        out.append({"format": "bcrypt-2b", "password": pw, "hash": h2b})
        out.append({"format": "bcrypt-2a", "password": pw, "hash": h2a})
        # PHP's crypt_blowfish writes $2y$; Python's bcrypt cannot, so this
        # is a $2b$ hash with its prefix replaced. The algorithms agree:
        # $2y$ is crypt_blowfish's fixed bcrypt, the same one as $2b$.
        h2y = "$2y$" + bcrypt.hashpw(b, bcrypt.gensalt(rounds=4)).decode("ascii")[4:]
        assert bcrypt.checkpw(b, h2y.encode())
        out.append({"format": "bcrypt-2y", "password": pw, "hash": h2y})
    # bcrypt uses the first 72 bytes of a password and ignores the rest;
    # a hash imported from such a system must keep that behaviour.
    long_pw = "7" * 80
    h = bcrypt.hashpw(long_pw.encode(), bcrypt.gensalt(rounds=4)).decode("ascii")
    out.append({"format": "bcrypt-2b-long", "password": long_pw, "hash": h})


def argon2_hashes(out):
    for fmt, ph, passwords in [
        ("argon2id-phc", argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1), PINS + [PASSPHRASE]),
        # Memory that is not a multiple of 4 lanes' blocks: argon2 rounds it
        # down, and Go must do the same.
        ("argon2id-phc-lanes", argon2.PasswordHasher(time_cost=2, memory_cost=50, parallelism=3), PINS[:1]),
        # Exactly what the package itself writes: OWASP's m=19 MiB, t=2,
        # p=1, a 16-byte salt and a 32-byte key.
        (
            "argon2id-phc-owasp",
            argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16),
            PINS[:1],
        ),
    ]:
        assert ph.type == argon2.Type.ID
        for pw in passwords:
            h = ph.hash(pw)
            assert ph.verify(h, pw)
            out.append({"format": fmt, "password": pw, "hash": h})


def main():
    out = []
    django_hashes(out)
    bcrypt_hashes(out)
    argon2_hashes(out)
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "proxy", "internal", "password", "testdata", "legacy-hashes.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for line in out:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print("wrote %d hashes to %s" % (len(out), os.path.relpath(path)), file=sys.stderr)


if __name__ == "__main__":
    main()
