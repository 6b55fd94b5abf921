"""Rules of signing in to the portal: passwords (argon2), one-time set-up links, browser sessions.

Only hashes are stored: of the password (argon2id), of a set-up link's token and of a session's token
(SHA-256: both are 256-bit random values, so a fast hash loses nothing). A set-up link works once, for
`OPENMMP_PORTAL__SETUP_LINK_HOURS`; setting a password signs the user out of every other browser.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.errors import Invalid, NotFound, TooManyRequests
from openmmp.kit.time import now_ms
from openmmp.models import Company, PortalSession, User
from openmmp.models.company import CompanyStatus, UserRole
from openmmp.portal import repository
from openmmp.settings import PortalSettings

MIN_PASSWORD = 12
MAX_PASSWORD = 200
_HOUR_MS = 3_600_000
_FAILURE_WINDOW_S = 15 * 60
_MAX_ADDRESSES = 100_000
# argon2 costs tens of milliseconds of CPU and 64 MiB a check: it runs in threads, a few at a time, so
# sign-ins never stall the event loop that serves the API.
_HASHING = asyncio.Semaphore(2)
T = TypeVar("T")
_hasher = PasswordHasher()
# Verifying against this when no user matches costs the same time as a real check: the answer's timing
# does not tell which e-mail addresses have an account.
_DECOY = _hasher.hash(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignInRefused(Invalid):
    """Wrong e-mail address or password: one message for both, so neither is revealed."""

    default_name = "password"


@dataclass(frozen=True)
class SignedIn:
    token: str  # the cookie's value, in clear only here
    portal_session: PortalSession
    user: User


class FailedSignIns:
    """Wrong passwords per e-mail address in the last 15 minutes, in this process: a guesser waits.

    At most `_MAX_ADDRESSES` addresses are remembered (the oldest forgotten first), so addresses made up
    by the thousand cannot grow it without bound."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def check(self, email: str, limit: int) -> None:
        recent = self._recent(email)
        if len(recent) >= limit:
            wait = max(1, int(recent[0] + _FAILURE_WINDOW_S - time.monotonic()) + 1)
            raise TooManyRequests(
                f"Too many wrong passwords for this address; try again in {wait // 60 + 1} minutes",
                retry_after_s=wait,
                name="password",
            )

    def failed(self, email: str) -> None:
        recent = self._recent(email)
        recent.append(time.monotonic())
        self._failures[email] = recent
        while len(self._failures) > _MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, email: str) -> None:
        self._failures.pop(email, None)

    def _recent(self, email: str) -> deque[float]:
        recent = self._failures.pop(email, deque())  # put back by `failed`, last in the order
        while recent and recent[0] < time.monotonic() - _FAILURE_WINDOW_S:
            recent.popleft()
        if recent:
            self._failures[email] = recent
        return recent


async def _off_the_loop(work: Callable[[], T]) -> T:
    async with _HASHING:
        return await asyncio.to_thread(work)


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"must have at least {MIN_PASSWORD} characters", name="password")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"must have at most {MAX_PASSWORD} characters", name="password")


async def issue_setup_link(session: AsyncSession, user: User, *, hours: float) -> str:
    """A new one-time set-up token for `user` (any earlier one stops working); returns it in clear."""
    token = secrets.token_urlsafe(32)
    user.setup_token_hash = token_hash(token)
    user.setup_expires_at = now_ms() + int(hours * _HOUR_MS)
    await session.flush()
    return token


async def user_of_setup_link(session: AsyncSession, token: str) -> User:
    """The user a set-up link is for, while it works; else 404 (used, replaced or expired)."""
    user = await repository.user_by_setup_token(session, token_hash(token))
    if user is None or user.setup_expires_at is None or user.setup_expires_at <= now_ms():
        raise NotFound("This link has been used or has expired; ask for a new one", name="token")
    return user


async def set_password(
    session: AsyncSession, token: str, *, password: str, repeated: str, settings: PortalSettings
) -> SignedIn:
    """Set the password of the link's user, spend the link, sign out elsewhere and sign in here."""
    user = await user_of_setup_link(session, token)
    _password_rules(password)
    if not hmac.compare_digest(password.encode(), repeated.encode()):
        raise Invalid("the two passwords differ", name="repeated")
    user.password_hash = await _off_the_loop(partial(_hasher.hash, password))
    user.setup_token_hash = None
    user.setup_expires_at = None
    await repository.delete_sessions_of(session, user.id)
    return await _sign_in(session, user, settings)


async def sign_in(
    session: AsyncSession, failures: FailedSignIns, *, email: str, password: str, settings: PortalSettings
) -> SignedIn:
    """A new session for the user with this e-mail address and password; SignInRefused otherwise."""
    email = email.strip().lower()
    failures.check(email, settings.max_failed_sign_ins)
    candidates = [u for u in await repository.users_by_email(session, email) if u.password_hash]
    for user in candidates:
        if not await _off_the_loop(partial(_matches, user.password_hash or "", password)):
            continue
        company = await repository.company(session, user.company_id)
        if company is None or company.status != CompanyStatus.ACTIVE:
            raise SignInRefused("This company is not active")
        failures.succeeded(email)
        return await _sign_in(session, user, settings)
    if not candidates:
        await _off_the_loop(partial(_matches, _DECOY, password))
    failures.failed(email)
    raise SignInRefused("Wrong e-mail address or password")


async def _sign_in(session: AsyncSession, user: User, settings: PortalSettings) -> SignedIn:
    now = now_ms()
    await repository.delete_expired_sessions(session, now)
    token = secrets.token_urlsafe(32)
    portal_session = PortalSession(
        token_hash=token_hash(token),
        user_id=user.id,
        csrf=secrets.token_urlsafe(32),
        company_id=None if user.role == UserRole.OPERATOR else user.company_id,
        created_at=now,
        expires_at=now + int(settings.session_hours * _HOUR_MS),
    )
    await repository.add_session(session, portal_session)
    return SignedIn(token=token, portal_session=portal_session, user=user)


async def signed_in(session: AsyncSession, token: str) -> tuple[PortalSession, User, Company | None] | None:
    """The session of a cookie's token, its user and the company the session looks at, if any."""
    found = await repository.session_with_user(session, token_hash(token), now_ms())
    if found is None:
        return None
    portal_session, user, own = found
    if own.status != CompanyStatus.ACTIVE:
        return None
    if portal_session.company_id is None:
        return portal_session, user, None
    if portal_session.company_id == own.id:
        return portal_session, user, own
    return portal_session, user, await repository.company(session, portal_session.company_id)


async def sign_out(session: AsyncSession, token: str) -> None:
    await repository.delete_session(session, token_hash(token))


async def add_operator(session: AsyncSession, partner: Company, *, name: str, email: str) -> User:
    """An operator user in the operator's partner company (or the existing one with that address)."""
    for user in await repository.users_by_email(session, email):
        if user.company_id == partner.id:
            user.role = UserRole.OPERATOR
            return user
    user = User(company_id=partner.id, name=name, email=email.lower(), role=UserRole.OPERATOR)
    session.add(user)
    await session.flush()
    return user
