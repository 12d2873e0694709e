"""kongsim: test equipment that behaves like Kong Gateway OSS 3.9.3 (never deployed by default)."""

KONG_VERSION = "3.9.3"
