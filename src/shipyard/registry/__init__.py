"""The registry capability: the model catalog, registered models and prompts with
immutable versions, aliases per environment, gated promotion with four eyes, releases
and lineage. The gateway resolves registry aliases and catalog queries through
`shipyard.registry.resolve` (a `RouteResolver`), never by reading these tables."""
