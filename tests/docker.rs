//! The behaviour fixtures of `tests/sandbox.rs`, run on the docker backend (runc): the same
//! cases must give the same facts. Needs a reachable Docker Engine (`scripts/start-docker.sh`;
//! CI starts one) and root.

#[path = "sandbox.rs"]
mod cases;
