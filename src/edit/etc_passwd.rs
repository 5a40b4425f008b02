//! `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`. No I/O.

/// One account, without the GECOS field and password placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// The account called `name`, or `None` when there is none (or its line is
/// malformed).
pub fn user(text: &str, name: &str) -> Option<PasswdEntry> {
    text.lines().find_map(|line| {
        let (user, rest) = line.split_once(':')?;
        if user != name {
            return None;
        }
        let mut fields = rest.splitn(6, ':');
        let (_password, uid, gid) = (fields.next()?, fields.next()?, fields.next()?);
        let (_gecos, home, shell) = (fields.next()?, fields.next()?, fields.next()?);
        Some(PasswdEntry {
            name: user.to_owned(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            home: home.to_owned(),
            shell: shell.to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
gitlab-runner:x:999:999:GitLab Runner:/home/gitlab-runner:/bin/bash
broken:x:uid:1::/:/bin/sh
short:x:5:5
";

    fn entry(name: &str, uid: u32, gid: u32, home: &str, shell: &str) -> PasswdEntry {
        PasswdEntry {
            name: name.to_owned(),
            uid,
            gid,
            home: home.to_owned(),
            shell: shell.to_owned(),
        }
    }

    #[test]
    fn user_cases() {
        let cases: &[(&str, Option<PasswdEntry>)] = &[
            (
                "gitlab-runner",
                Some(entry(
                    "gitlab-runner",
                    999,
                    999,
                    "/home/gitlab-runner",
                    "/bin/bash",
                )),
            ),
            ("root", Some(entry("root", 0, 0, "/root", "/bin/bash"))),
            (
                "daemon",
                Some(entry("daemon", 1, 1, "/usr/sbin", "/usr/sbin/nologin")),
            ),
            ("broken", None),
            ("short", None),
            ("gitlab", None),
            ("nobody", None),
        ];
        for (name, expected) in cases {
            assert_eq!(user(PASSWD, name), *expected, "{name}");
        }
    }
}
