"""SQLAlchemy tables. Import this package to register every table on `Base.metadata`."""

from openmmp.models.api_key import ApiKey
from openmmp.models.base import Base
from openmmp.models.channel import Channel
from openmmp.models.company import Company, User

__all__ = ["ApiKey", "Base", "Channel", "Company", "User"]
