#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for agentd-smtp's integration tests.

Serve:      smtp_server.py --port 0 --spool FILE [--starttls --cert C --key K]
                           [--auth-user U --auth-pass P] [--fail-first-rcpt 451]
                           [--reject 550] [--hang] [--drop-after-data] [--data-delay S]
            Listens on 127.0.0.1, prints "READY <port>" once accepting connections, and appends
            one JSON line per event to the spool: {"event": "message", "mail_from", "rcpt_tos",
            "subject", "data", "tls", "auth_user", "answered"} for every message received whole
            ("answered": false when the server closed the connection instead of answering it),
            {"event": "rcpt", "code", "address"} for every refused recipient, {"event": "mail"}
            for every MAIL command, {"event": "data_start", "rcpt_tos"} for every DATA command
            and {"event": "data_aborted", "rcpt_tos", "subject"} for a message whose client went
            away while --data-delay held back the answer (not accepted, not counted as a message).
            --drop-after-data: close the connection after the first message's data arrives,
            without answering it (the client cannot know whether it was accepted); later
            messages are answered normally.
            --data-delay S: wait S seconds (fractions allowed) after a message's data arrives
            before accepting and answering it.
Make certs: smtp_server.py --gen-certs DIR
            Writes ca.pem, server.pem, server.key (CN/SAN 127.0.0.1 and localhost, signed by
            ca.pem) and wrong-ca.pem (an unrelated CA).

Requires: pip install aiosmtpd cryptography
"""

import argparse
import asyncio
import datetime
import email.parser
import email.policy
import ipaddress
import json
import os
import ssl
import sys


def gen_certs(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def make_ca(common):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def pem(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key, ca_cert = make_ca("agentd test CA")
    _, wrong_cert = make_ca("unrelated test CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca.pem": pem(ca_cert),
        "wrong-ca.pem": pem(wrong_cert),
        "server.pem": pem(server_cert),
        "server.key": server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    for file_name, data in files.items():
        with open(os.path.join(directory, file_name), "wb") as f:
            f.write(data)


class Spool:
    def __init__(self, path):
        self.path = path

    def write(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


class Handler:
    """aiosmtpd hooks: record everything, misbehave on request."""

    def __init__(self, args, spool):
        self.args = args
        self.spool = spool
        self.deferred_once = False
        self.dropped_once = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.spool.write({"event": "mail", "address": address})
        if self.args.hang:
            await asyncio.Event().wait()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.reject:
            self.spool.write({"event": "rcpt", "code": self.args.reject, "address": address})
            return f"{self.args.reject} 5.1.1 <{address}>: mailbox unavailable"
        if self.args.fail_first_rcpt and not self.deferred_once:
            self.deferred_once = True
            code = self.args.fail_first_rcpt
            self.spool.write({"event": "rcpt", "code": code, "address": address})
            return f"{code} 4.3.0 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        auth_user = None
        if session.authenticated and session.auth_data is not None:
            auth_user = session.auth_data.login.decode()
        data = envelope.content.decode("utf-8", "replace")
        record = {
            "event": "message",
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": subject_of(data),
            "data": data,
            "tls": session.ssl is not None,
            "auth_user": auth_user,
            "answered": True,
        }
        if self.args.drop_after_data and not self.dropped_once:
            self.dropped_once = True
            record["answered"] = False
            self.spool.write(record)
            server.transport.close()
            # Closing makes aiosmtpd cancel this handler; no answer is ever written.
            await asyncio.Event().wait()
        if self.args.data_delay:
            try:
                await asyncio.sleep(self.args.data_delay)
            except asyncio.CancelledError:
                self.spool.write({
                    "event": "data_aborted",
                    "rcpt_tos": envelope.rcpt_tos,
                    "subject": record["subject"],
                })
                raise
        self.spool.write(record)
        return "250 2.0.0 OK queued for delivery"


def subject_of(data):
    headers = email.parser.HeaderParser(policy=email.policy.default).parsestr(data)
    return str(headers.get("Subject", ""))


def smtp_class():
    """aiosmtpd's SMTP, logging each DATA command before it is handled."""
    from aiosmtpd.smtp import SMTP

    class RecordingSMTP(SMTP):
        async def smtp_DATA(self, arg):
            if self.envelope.rcpt_tos:
                self.event_handler.spool.write(
                    {"event": "data_start", "rcpt_tos": list(self.envelope.rcpt_tos)}
                )
            await super().smtp_DATA(arg)

    return RecordingSMTP


def authenticator_for(user, password):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


async def serve(args):
    SMTP = smtp_class()
    tls_context = None
    if args.starttls:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)
    handler = Handler(args, Spool(args.spool))
    smtp_options = dict(
        hostname="test.relay",
        tls_context=tls_context,
        require_starttls=bool(args.starttls),
        auth_require_tls=bool(args.starttls),
    )
    if args.auth_user is not None:
        smtp_options["authenticator"] = authenticator_for(args.auth_user, args.auth_pass)
        smtp_options["auth_required"] = True
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, loop=loop, **smtp_options), host="127.0.0.1", port=args.port
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gen-certs", metavar="DIR")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--spool")
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth-user")
    parser.add_argument("--auth-pass")
    parser.add_argument("--fail-first-rcpt", type=int, metavar="CODE")
    parser.add_argument("--reject", type=int, metavar="CODE")
    parser.add_argument("--hang", action="store_true", help="answer EHLO, then never MAIL")
    parser.add_argument(
        "--drop-after-data", action="store_true",
        help="close the connection after the first message's data, without answering",
    )
    parser.add_argument(
        "--data-delay", type=float, default=0.0, metavar="SECONDS",
        help="wait this long after a message's data before answering it",
    )
    args = parser.parse_args()
    if args.gen_certs:
        gen_certs(args.gen_certs)
        print("CERTS " + args.gen_certs, flush=True)
        return
    if not args.spool:
        parser.error("--spool is required when serving")
    if args.starttls and not (args.cert and args.key):
        parser.error("--starttls needs --cert and --key")
    if (args.auth_user is None) != (args.auth_pass is None):
        parser.error("--auth-user and --auth-pass go together")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
