"""Framework-free service logic behind the HTTP routes: sessions, tools, keys."""

from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService
from toolserver.service.tools import ToolService

__all__ = ["Principal", "SessionService", "ToolService"]
