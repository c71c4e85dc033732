//! clouds.yaml and openrc for the `openstack` CLI and SDKs.

use anyhow::Result;

use crate::state::{StateDir, write_file};

fn cloud(
    name: &str,
    auth_url: &str,
    region: &str,
    user: &str,
    password: &str,
    scope: &str,
) -> String {
    format!(
        "  {name}:\n    auth:\n      auth_url: {auth_url}\n      username: {user}\n      password: \"{password}\"\n{scope}      user_domain_name: Default\n    region_name: {region}\n    interface: public\n    identity_api_version: 3\n"
    )
}

/// Write `clouds.yaml` (clouds `kumo`, `kumo-admin`, `kumo-system-admin`) and `openrc`.
pub fn write(
    state: &StateDir,
    auth_url: &str,
    region: &str,
    password: &str,
    demo: bool,
) -> Result<()> {
    let project =
        |p: &str| format!("      project_name: {p}\n      project_domain_name: Default\n");
    let (user, proj) = if demo {
        ("demo", "demo")
    } else {
        ("admin", "admin")
    };
    let mut yaml = String::from(
        "# Written by kumo; `export OS_CLIENT_CONFIG_FILE=<this file>` or copy it to\n# ~/.config/openstack/clouds.yaml, then `openstack --os-cloud kumo ...`.\nclouds:\n",
    );
    yaml.push_str(&cloud(
        "kumo",
        auth_url,
        region,
        user,
        password,
        &project(proj),
    ));
    yaml.push_str(&cloud(
        "kumo-admin",
        auth_url,
        region,
        "admin",
        password,
        &project("admin"),
    ));
    yaml.push_str(&cloud(
        "kumo-system-admin",
        auth_url,
        region,
        "admin",
        password,
        "      system_scope: all\n",
    ));
    write_file(&state.clouds_yaml(), &yaml, 0o600)?;

    let rc = format!(
        "# Source this file to use the `openstack` CLI as the cloud admin: . {path}\n\
         export OS_AUTH_URL={auth_url}\nexport OS_IDENTITY_API_VERSION=3\nexport OS_REGION_NAME={region}\n\
         export OS_INTERFACE=public\nexport OS_USERNAME=admin\nexport OS_PASSWORD='{password}'\n\
         export OS_PROJECT_NAME=admin\nexport OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n\
         export OS_CLIENT_CONFIG_FILE={clouds}\n",
        path = state.openrc().display(),
        clouds = state.clouds_yaml().display(),
    );
    write_file(&state.openrc(), &rc, 0o600)?;
    Ok(())
}
