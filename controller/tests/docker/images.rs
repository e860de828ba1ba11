//! The images themselves: they build from local bases, run as a non-root user, and
//! PID 1 is jetmill, so `docker stop` (SIGTERM) drains instead of waiting for SIGKILL.

use crate::helpers::{bin, docker_or_skip};

#[test]
fn the_images_run_jetmill_as_a_non_root_user() {
    let Some(d) = docker_or_skip() else { return };
    let images = d.images_with("img", bin()).expect("build test images");
    let user = d
        .cli([
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}",
            &images.jetmill,
        ])
        .expect("inspect");
    assert_eq!(user.trim(), "10001:10001");
    let version = d
        .cli(["run", "--rm", &images.jetmill, "--version"])
        .expect("docker run jetmill --version");
    assert!(version.starts_with("jetmill "), "{version}");
    let nats = d
        .cli([
            "run",
            "--rm",
            "--entrypoint",
            "nats-server",
            &images.nats,
            "--version",
        ])
        .expect("docker run nats-server --version");
    assert!(nats.contains("nats-server"), "{nats}");
    for image in [&images.jetmill, &images.nats] {
        let size = d
            .cli(["image", "inspect", "--format", "{{.Size}}", image])
            .expect("inspect size");
        eprintln!("{image}: {} bytes", size.trim());
    }
}
