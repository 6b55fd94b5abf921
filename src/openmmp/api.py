"""Mounts every domain router under /api/v1."""

from fastapi import APIRouter

from openmmp.api_keys.endpoints import router as api_keys_router
from openmmp.billing.endpoints import router as billing_router
from openmmp.billing.summary import router as summary_router
from openmmp.campaigns.endpoints import router as campaigns_router
from openmmp.channels.agent_endpoints import routers as agent_routers
from openmmp.channels.consent_endpoints import routers as consent_routers
from openmmp.channels.endpoints import router as channels_router
from openmmp.companies.endpoints import router as companies_router
from openmmp.kit.paths import API_PREFIX
from openmmp.messages.endpoints import channel_router as message_channel_router
from openmmp.messages.endpoints import email_router, message_router
from openmmp.tasks.endpoints import router as tasks_router
from openmmp.templates.broadcast import router as template_broadcast_router
from openmmp.templates.endpoints import router as templates_router
from openmmp.webhooks.endpoints import router as webhooks_router

router = APIRouter(prefix=API_PREFIX)
# A request is matched against the routes in this order, one by one: the per-message routes (sends and
# status reads) first. The documentation groups operations by tag, whatever this order.
router.include_router(message_channel_router)
router.include_router(message_router)
router.include_router(email_router)
router.include_router(channels_router)
router.include_router(webhooks_router)
router.include_router(companies_router)
router.include_router(api_keys_router)
router.include_router(tasks_router)
router.include_router(templates_router)
router.include_router(template_broadcast_router)
router.include_router(campaigns_router)
router.include_router(summary_router)
router.include_router(billing_router)
for agent_router in agent_routers:
    router.include_router(agent_router)
for consent_router in consent_routers:
    router.include_router(consent_router)
