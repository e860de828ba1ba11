//! Docker tests: jetmill's images, `docker/compose.yml` and `docker/stack.yml` on a real
//! Docker engine (see `jetmill_testkit::docker`: one test at a time machine-wide, dockerd
//! started and the host restored as needed). `JETMILL_SKIP_DOCKER_TESTS=1` skips them.
//! A separate test binary so the rest of the suite never waits for Docker.

mod autoscale;
mod compose;
mod helpers;
mod images;
mod probe;
mod swarm;
