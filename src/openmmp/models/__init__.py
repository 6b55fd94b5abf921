"""SQLAlchemy tables. Import this package to register every table on `Base.metadata`."""

from openmmp.models.api_key import ApiKey
from openmmp.models.base import Base
from openmmp.models.campaign import Campaign, CampaignContact
from openmmp.models.channel import Channel
from openmmp.models.company import Company, PortalSession, User
from openmmp.models.conversation import Conversation, InboundMessage
from openmmp.models.message import Job, Message, MessageEvent, MessagePart, ProviderEvent
from openmmp.models.tally import MessageTally
from openmmp.models.task import BackgroundTask, BackgroundTaskChunk
from openmmp.models.template import Template, TemplateFlow
from openmmp.models.upload import Upload, UploadChunk
from openmmp.models.webhook import WebhookAttempt, WebhookDelivery

__all__ = [
    "ApiKey",
    "BackgroundTask",
    "BackgroundTaskChunk",
    "Base",
    "Campaign",
    "CampaignContact",
    "Channel",
    "Company",
    "Conversation",
    "InboundMessage",
    "Job",
    "Message",
    "MessageEvent",
    "MessagePart",
    "MessageTally",
    "PortalSession",
    "ProviderEvent",
    "Template",
    "TemplateFlow",
    "Upload",
    "UploadChunk",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
]
