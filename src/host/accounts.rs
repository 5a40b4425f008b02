//! Users and groups. On a live host they are looked up in-process through
//! nix (getpwnam/getgrnam, so NSS sources count); under `--root DIR` the
//! tree's own /etc/passwd and /etc/group are read, since the running
//! system's databases describe another host.

use anyhow::{Context, Result};

use super::files::Files;
use crate::edit::{etc_group, etc_passwd};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Accounts {
    files: Files,
    system_databases: bool,
}

impl Accounts {
    pub fn new(files: Files) -> Self {
        let system_databases = files.root() == std::path::Path::new("/");
        Self {
            files,
            system_databases,
        }
    }

    pub fn user(&self, name: &str) -> Result<Option<User>> {
        if self.system_databases {
            let user = nix::unistd::User::from_name(name)
                .with_context(|| format!("looking up user {name}"))?;
            return Ok(user.map(|u| User {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir.to_string_lossy().into_owned(),
                shell: u.shell.to_string_lossy().into_owned(),
            }));
        }
        let text = self.files.read("/etc/passwd")?.unwrap_or_default();
        Ok(etc_passwd::user(&text, name).map(|u| User {
            name: u.name,
            uid: u.uid,
            gid: u.gid,
            home: u.home,
            shell: u.shell,
        }))
    }

    pub fn group(&self, name: &str) -> Result<Option<Group>> {
        if self.system_databases {
            let group = nix::unistd::Group::from_name(name)
                .with_context(|| format!("looking up group {name}"))?;
            return Ok(group.map(|g| Group {
                name: g.name,
                gid: g.gid.as_raw(),
                members: g.mem,
            }));
        }
        let text = self.files.read("/etc/group")?.unwrap_or_default();
        Ok(etc_group::group(&text, name).map(|g| Group {
            name: g.name,
            gid: g.gid,
            members: g.members,
        }))
    }
}
