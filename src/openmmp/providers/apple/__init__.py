"""Apple Messages for Business through OpenMMP as the business's Messaging Service Provider (MSP)."""
