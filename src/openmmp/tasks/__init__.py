"""Background tasks: long work run in steps by the workers, with progress and a result file.

Other domains start one with `service.create` and register its handler in `workers.task_handlers`.
"""
