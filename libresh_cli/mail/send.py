"""A test message through the relay, from this machine, with the relay's TLS mode and
credentials (Python's smtplib), certificates verified. Each way it can fail is an error of
its own kind, so the exit code says which (README, "Exit codes")."""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from libresh_cli.errors import (
    BadInputError,
    LibreshError,
    OperationFailedError,
    UnreachableError,
)
from libresh_cli.mail.relay import Relay, check_address, split_address

DEFAULT_TIMEOUT = 10.0  # seconds for the connection and for each answer of the relay


@dataclass(frozen=True)
class Sent:
    relay: str
    sender: str
    recipient: str
    message_id: str


def send_test(
    relay: Relay, to: str, *, ca_file: Path | None = None, timeout: float = DEFAULT_TIMEOUT
) -> Sent:
    check_address(to, "--to")
    message = probe_message(relay.from_address, to)
    where = f"{relay.host}:{relay.port}"
    try:
        with _connect(relay, _tls_context(ca_file), timeout) as smtp:
            if relay.user:
                smtp.login(relay.user, relay.password)
            smtp.send_message(message)
    except LibreshError:
        raise
    except smtplib.SMTPAuthenticationError as error:
        raise UnreachableError(
            f"The relay {where} refused the login of {relay.user!r}: {_said(error)}.",
            hint="Check the user and password: libresh mail set … --password-file FILE",
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise UnreachableError(
            f"The relay {where} offers no login (AUTH) on this connection.",
            hint="Many relays offer it only over TLS: --tls starttls or --tls tls.",
        ) from None
    except smtplib.SMTPRecipientsRefused as error:
        said = "; ".join(_said(e) for e in error.recipients.values())
        raise BadInputError(
            f"The relay {where} refused the recipient --to {to!r}: {said}.",
            hint="Try an address the relay delivers to (some relays only accept their own "
            "domains, or only once logged in).",
        ) from None
    except smtplib.SMTPSenderRefused as error:
        raise BadInputError(
            f"The relay {where} refused the from-address {relay.from_address!r}: {_said(error)}.",
            hint="Use an address the relay lets this user send from: libresh mail set … --from",
        ) from None
    except smtplib.SMTPResponseException as error:
        raise OperationFailedError(
            f"The relay {where} refused the message: {_said(error)}."
        ) from None
    except ssl.SSLCertVerificationError as error:
        raise UnreachableError(
            f"The relay {where}'s certificate is not trusted: {error.verify_message}.",
            hint="If the relay uses a certificate of a private CA, give that CA with "
            "--ca-file FILE (PEM).",
        ) from None
    except ssl.SSLError as error:
        raise UnreachableError(
            f"TLS with the relay {where} failed: {error.reason or error}.",
            hint="Check --tls: port 465 usually speaks TLS at once (--tls tls), 587 and 25 "
            "begin in plain text (--tls starttls).",
        ) from None
    except (smtplib.SMTPException, OSError) as error:
        raise UnreachableError(
            f"The relay {where} did not answer: {_reason(error)}.",
            hint="Check the host and port (libresh mail show), and that this machine may reach "
            "it (firewalls often block port 25).",
        ) from None
    return Sent(where, relay.from_address, to, str(message["Message-ID"]))


def probe_message(sender: str, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "libresh: test message"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid("libresh", domain=split_address(sender)[1])
    message.set_content(
        "This message was sent by `libresh mail test` through this cluster's SMTP relay.\n"
        "The apps that send mail use the same relay.\n"
    )
    return message


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs, or only the one given (a relay with a private CA), with host names
    checked either way."""
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as error:
        raise BadInputError(
            f"--ca-file {ca_file}: {getattr(error, 'strerror', None) or error}.",
            hint="Give a file of PEM certificates.",
        ) from None


def _connect(relay: Relay, context: ssl.SSLContext, timeout: float) -> smtplib.SMTP:
    if relay.tls == "tls":
        return smtplib.SMTP_SSL(relay.host, relay.port, timeout=timeout, context=context)
    smtp = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
    try:
        if relay.tls == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise UnreachableError(
                    f"The relay {relay.host}:{relay.port} does not offer STARTTLS.",
                    hint="Check --tls and --port: port 465 is --tls tls.",
                )
            smtp.starttls(context=context)
            smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def _said(error: smtplib.SMTPResponseException | tuple[int, bytes]) -> str:
    code, text = (
        (error.smtp_code, error.smtp_error)
        if isinstance(error, smtplib.SMTPResponseException)
        else error
    )
    said = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {said.strip()}"


def _reason(error: BaseException) -> str:
    # smtplib reports a reply that never came as a disconnection "…: timed out".
    if isinstance(error, socket.timeout | TimeoutError) or str(error).endswith("timed out"):
        return "no answer in time (--timeout)"
    if isinstance(error, socket.gaierror):
        return f"the name does not resolve ({error.strerror})"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
