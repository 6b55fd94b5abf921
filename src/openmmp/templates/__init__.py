"""Message templates (api.md §4.5): saved, reviewed by the operator or the upstream, then sent by id.

`service.sendable`, `service.variables_of` and `service.message_for` are what a send of a template uses.
"""
