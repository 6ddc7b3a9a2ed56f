"""Loading the risk book at scale (issue 19 item 3): a start-up load, account by account as the
stream engine's syncs do it, gives the very figures of one bulk upsert and of one position at a
time, and its cost does not grow with the book (no index rebuilt, no pool array copied per sync)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np
import pytest

import positions.book as book_module
from positions.book import RiskBook
from positions.tests.test_book import SYMBOLS, T0, TABLES, Desk, assert_account_matches, assert_plain_matches

ASSETS = ("USDT", "USDC")


def desk_with_rows(seed: int, *, accounts: int, per_account: int) -> Desk:
    """A test desk whose book (marks and wallets first) took each row one ``upsert_position`` at a
    time, account after account (so every way of loading below allocates the same slots)."""
    desk = Desk(seed=seed, accounts=accounts, positions=0)
    for account in range(accounts):
        for _ in range(per_account):
            symbol = desk.rng.choice(SYMBOLS)
            existing = [p for (s, _), p in desk.rows.get(account, {}).items() if s == symbol]
            margin_type = existing[0].margin_type if existing else desk.rng.choice(["cross", "cross", "isolated"])
            asset = existing[0].margin_asset if existing else desk.rng.choice(["USDT"] * 3 + ["USDC"])
            side = desk.rng.choice(["LONG", "SHORT"]) if desk.hedged[account] else "BOTH"
            desk.upsert(account, desk.random_position(symbol, side, margin_type, asset))
    desk.book.resync()  # its figures from scratch, as a full-market frame leaves the others'
    return desk


def fresh_book() -> RiskBook:
    book = RiskBook(capacity=16)
    for symbol in SYMBOLS:
        book.set_brackets(symbol, TABLES[symbol])
    return book


def load_by_sync(desk: Desk) -> RiskBook:
    """As StreamEngine.start: brackets, then per account its wallets and one upsert_positions."""
    book = fresh_book()
    for account, rows in desk.rows.items():
        assert not book.has_account(account)
        for asset in ASSETS:
            book.set_wallet(account, desk.wallets[account][asset], asset=asset)
        book.upsert_positions([(account, p) for p in rows.values()])
        assert book.has_account(account)
    return book


def load_in_bulk(desk: Desk) -> RiskBook:
    """Every row in one upsert_positions call, then the wallets (bench/revalue.build_book's way)."""
    book = fresh_book()
    book.upsert_positions([(account, p) for account, rows in desk.rows.items() for p in rows.values()])
    for account in desk.rows:
        for asset in ASSETS:
            book.set_wallet(account, desk.wallets[account][asset], asset=asset)
    return book


def figures_of(book: RiskBook, accounts: list[int]) -> dict:
    return {a: (book.account(a), book.positions(a), book.account_plain(a), book.positions_plain(a)) for a in accounts}


def assert_same_figures(books: list[RiskBook], accounts: list[int]) -> None:
    """Field for field: every AccountRisk (per_asset included), PositionRisk and plain form."""
    expected = figures_of(books[0], accounts)
    for book in books[1:]:
        got = figures_of(book, accounts)
        for account in accounts:
            for mine, theirs in zip(got[account], expected[account], strict=True):
                assert mine == theirs, account


def apply_marks(book: RiskBook, desk: Desk, ts: int) -> set:
    return book.apply_mark_array(list(desk.marks), [str(m) for m in desk.marks.values()], ts=ts)


@pytest.mark.parametrize("seed", [21, 22])
def test_a_load_account_by_account_equals_a_bulk_load_and_one_position_at_a_time(seed: int) -> None:
    desk = desk_with_rows(seed, accounts=40, per_account=12)
    one_by_one = desk.book
    accounts = sorted(desk.rows)
    by_sync, bulk = load_by_sync(desk), load_in_bulk(desk)
    assert by_sync.account_ids() == bulk.account_ids() == accounts
    # Before the first frame (the engine's start-up): the same incomplete figures, naming the marks.
    assert_same_figures([by_sync, bulk], accounts)
    assert not by_sync.account(accounts[0]).complete
    # The first full-market frame: everything, exactly as the book that took one row at a time.
    assert apply_marks(by_sync, desk, T0) == apply_marks(bulk, desk, T0) == set(accounts)
    assert_same_figures([one_by_one, by_sync, bulk], accounts)
    for account in accounts:
        desk.book = by_sync
        assert_account_matches(desk, account)  # and the Decimal reference, as test_book checks it
        assert_plain_matches(by_sync, account)
    # A single-symbol tick (incremental pool sums, the indexes rebuilt once).
    symbol = desk.rng.choice(SYMBOLS)
    desk.marks[symbol] = desk.marks[symbol] * 101 / 100
    changed = [book.apply_mark(symbol, str(desk.marks[symbol]), ts=T0 + 1) for book in (one_by_one, by_sync, bulk)]
    assert changed[0] == changed[1] == changed[2]
    assert_same_figures([one_by_one, by_sync, bulk], accounts)


def test_re_syncs_between_frames_keep_the_books_equal() -> None:
    """Structural changes (new rows, removed ones, a margin type switched) and size changes of
    several accounts between two frames, as re-syncs after a reconnect make them: the indexes stay
    stale until the next tick needs them, and every figure still matches."""
    desk = desk_with_rows(23, accounts=40, per_account=10)
    accounts = sorted(desk.rows)
    by_sync, bulk = load_by_sync(desk), load_in_bulk(desk)
    apply_marks(by_sync, desk, T0)
    apply_marks(bulk, desk, T0)
    books = [desk.book, by_sync, bulk]
    for step, account in enumerate(desk.rng.sample(accounts, 8)):
        rows = sorted(desk.rows[account])
        key = rows[step % len(rows)]
        if step % 3 == 0:
            old = desk.rows[account].pop(key)
            for book in books:
                book.remove_position(account, *key)
            assert old is not None
        else:
            old = desk.rows[account][key]
            changes = {"qty": old.qty * 2} if step % 3 == 1 else {}
            if step % 3 == 2 and not any(k[0] == key[0] and k != key for k in rows):  # no other leg
                to_isolated = old.margin_type == "cross"
                wallet = (abs(old.qty) * old.entry_price / old.leverage).quantize(Decimal("0.01"))
                changes = {
                    "margin_type": "isolated" if to_isolated else "cross",
                    "isolated_wallet": wallet if to_isolated else Decimal(0),
                }
            new = dataclasses.replace(old, **changes)
            desk.rows[account][key] = new
            results = [book.upsert_positions([(account, p) for p in desk.rows[account].values()]) for book in books]
            assert results[0] == results[1] == results[2]
        assert_same_figures(books, accounts)
    desk.move_marks(list(SYMBOLS), T0 + 10)  # desk.book's frame; the same for the others
    for book in books[1:]:
        apply_marks(book, desk, T0 + 10)
    assert_same_figures(books, accounts)
    for account in accounts:
        desk.book = by_sync
        assert_account_matches(desk, account)


def test_an_account_override_of_brackets_during_the_load_matches() -> None:
    desk = desk_with_rows(24, accounts=30, per_account=8)
    accounts = sorted(desk.rows)
    account = accounts[3]
    symbol = next(iter(desk.rows[account]))[0]
    scaled = [dataclasses.replace(b, floor=b.floor / 2, cap=b.cap / 2, cum=b.cum / 2) for b in TABLES[symbol]]
    by_sync = load_by_sync(desk)
    by_sync.set_brackets(symbol, scaled, account_id=account)
    bulk = load_in_bulk(desk)
    apply_marks(bulk, desk, T0)
    bulk.set_brackets(symbol, scaled, account_id=account)
    apply_marks(by_sync, desk, T0)
    assert_same_figures([by_sync, bulk], accounts)
    assert by_sync.positions(account) != desk.book.positions(account)  # the override took effect


def test_a_load_rebuilds_no_index_and_copies_no_pool_array_per_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """What made a load O(N²): every sync re-indexed the whole book and np.append copied every
    pool's arrays. Now a load of N accounts builds no index (the first frame builds it once) and
    grows the pool arrays by doubling."""
    builds = []

    class CountingCsr(book_module._Csr):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - passed through
            builds.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(book_module, "_Csr", CountingCsr)
    desk = desk_with_rows(25, accounts=120, per_account=6)
    book = fresh_book()
    buffers = {id(book._pool_buf["sum"])}
    built_at = []
    for account, rows in desk.rows.items():
        builds.clear()
        for asset in ASSETS:
            book.set_wallet(account, desk.wallets[account][asset], asset=asset)
        book.upsert_positions([(account, p) for p in rows.values()])
        built_at += [account] * len(builds)
        buffers.add(id(book._pool_buf["sum"]))
    # While the book is small an account's sync may rebuild the (small) indexes: not past the
    # first few accounts, whatever the desk's size.
    assert max(built_at, default=0) < 10
    assert len(buffers) <= int(np.log2(2 * len(desk.rows) + 1)) + 1  # 241 pools in 5 buffers (16 → 256)
    builds.clear()
    apply_marks(book, desk, T0)
    assert len(builds) == 2  # by symbol and by pool, once
    symbol = desk.rng.choice(SYMBOLS)
    book.apply_mark(symbol, str(desk.marks[symbol] * 2), ts=T0 + 1)
    assert len(builds) == 2
    desk.book.apply_mark(symbol, str(desk.marks[symbol] * 2), ts=T0 + 1)
    assert_same_figures([desk.book, book], sorted(desk.rows))


def test_has_account_is_account_ids_membership() -> None:
    book = fresh_book()
    assert not book.has_account(1)
    book.set_brackets(SYMBOLS[0], TABLES[SYMBOLS[0]], account_id=7)  # an override registers its account
    book.set_wallet(1, Desk(seed=1, accounts=1, positions=0).wallets[0]["USDT"])
    assert book.has_account(1) and book.has_account(7) and not book.has_account(2)
    assert {a for a in (1, 2, 7) if book.has_account(a)} == set(book.account_ids())
