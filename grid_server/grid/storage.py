"""The storage API's operations: free-form JSON items per registration and context.

Every call needs an existing registration; with token authentication it also needs
that registration's token. Limits: item size, items per registration, page size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from .auth import check_token
from .db.models import Registration, StorageItem
from .errors import RequestError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .clock import Clock
    from .config import StorageAuth
    from .db.engine import Database


@dataclass(frozen=True, slots=True)
class ItemPage:
    ids: list[str]
    contexts: list[str]
    items: list[Any]
    total_items: int
    page: int
    page_size: int


class StorageService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        auth: StorageAuth,
        max_item_bytes: int,
        max_items: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._auth = auth
        self.max_item_bytes = max_item_bytes
        self._max_items = max_items

    def _authorize(self, session: Session, registration_id: str, token: str | None) -> None:
        if self._auth == "token" and token is None:
            # Without a token the answer is 401 whether or not the registration exists.
            check_token(None, None)
        row = session.get(Registration, registration_id)
        if row is None or not row.active:
            raise RequestError(f"The registration '{registration_id}' does not exist.", 404)
        if self._auth == "token":
            check_token(row.token_hash, token)

    async def put(
        self, registration_id: str, context: str, item_id: str, value: Any, token: str | None
    ) -> None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        size = len(text.encode())
        if size > self.max_item_bytes:
            raise RequestError(f"The item is larger than {self.max_item_bytes} bytes.", 413)

        def store(session: Session) -> None:
            self._authorize(session, registration_id, token)
            row = session.get(StorageItem, (registration_id, context, item_id))
            if row is None:
                count = session.scalar(
                    select(func.count())
                    .select_from(StorageItem)
                    .where(StorageItem.registration_id == registration_id)
                )
                if (count or 0) >= self._max_items:
                    raise RequestError(
                        f"The registration already stores {self._max_items} items, the limit.", 409
                    )
                row = StorageItem(registration_id=registration_id, context=context, item_id=item_id)
                session.add(row)
            row.value_json = text
            row.size = size
            row.updated_at = self._clock()

        await self._db.run_write(store)

    async def get(self, registration_id: str, context: str, item_id: str, token: str | None) -> Any:
        def load(session: Session) -> Any:
            self._authorize(session, registration_id, token)
            row = session.get(StorageItem, (registration_id, context, item_id))
            if row is None:
                raise RequestError(f"There is no item '{item_id}' in context '{context}'.", 404)
            return json.loads(row.value_json)

        return await self._db.run_read(load)

    async def list_items(
        self,
        registration_id: str,
        context: str | None,
        page: int,
        page_size: int,
        token: str | None,
    ) -> ItemPage:
        def load(session: Session) -> ItemPage:
            self._authorize(session, registration_id, token)
            where = [StorageItem.registration_id == registration_id]
            if context is not None:
                where.append(StorageItem.context == context)
            total = session.scalar(select(func.count()).select_from(StorageItem).where(*where))
            rows = session.execute(
                select(StorageItem.context, StorageItem.item_id, StorageItem.value_json)
                .where(*where)
                .order_by(StorageItem.context, StorageItem.item_id)
                .offset(page * page_size)
                .limit(page_size)
            ).all()
            return ItemPage(
                ids=[row.item_id for row in rows],
                contexts=[row.context for row in rows],
                items=[json.loads(row.value_json) for row in rows],
                total_items=total or 0,
                page=page,
                page_size=page_size,
            )

        return await self._db.run_read(load)

    async def delete(
        self,
        registration_id: str,
        context: str | None,
        item_id: str | None,
        token: str | None,
    ) -> int:
        """Delete an item, a context or everything of a registration; returns the count."""

        def remove(session: Session) -> int:
            self._authorize(session, registration_id, token)
            where = [StorageItem.registration_id == registration_id]
            if context is not None:
                where.append(StorageItem.context == context)
            if item_id is not None:
                where.append(StorageItem.item_id == item_id)
            deleted = session.execute(delete(StorageItem).where(*where)).rowcount
            if item_id is not None and deleted == 0:
                raise RequestError(f"There is no item '{item_id}' in context '{context}'.", 404)
            return deleted

        return await self._db.run_write(remove)
