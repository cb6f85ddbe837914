"""The services one process runs, built once by server.py and handed to every handler."""

from __future__ import annotations

from dataclasses import dataclass

from services.backends.store import Store
from services.catalog import CatalogService
from services.config import Config


@dataclass(frozen=True)
class Services:
    config: Config
    store: Store
    catalog: CatalogService
