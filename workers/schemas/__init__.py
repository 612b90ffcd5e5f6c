"""The REST API's contract: request bodies (:mod:`workers.schemas.requests`, the job specifications the
service validates and the workers run) and response bodies (:mod:`workers.schemas.responses`), pydantic v2.

They live under ``workers`` so that both the service and the workers import them without an import from
``workers`` to ``service`` (dependencies point ``service -> workers -> backends -> sqsnn``); the database
models (:mod:`workers.models`) and the settings (:mod:`workers.settings`) sit beside them for that reason.
"""
