//! `/etc/group`: `name:password:gid:member,member`. No I/O.

/// One group: its id and its supplementary members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The entry for `group`, or `None` when there is no such group (or its line
/// is malformed). Only the supplementary list: users whose primary group it
/// is (the gid in `/etc/passwd`) are not named here.
pub fn group(text: &str, group: &str) -> Option<GroupEntry> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != group {
            return None;
        }
        let gid = fields.nth(1)?.trim().parse().ok()?;
        let members = fields.next().unwrap_or("");
        Some(GroupEntry {
            name: group.to_string(),
            gid,
            members: members
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str, name: &str) -> Option<Vec<String>> {
        group(text, name).map(|g| g.members)
    }

    const GROUP: &str = "\
root:x:0:
sudo:x:27:admin
docker:x:998:gitlab-runner,admin
gitlab-runner:x:997:
users:x:100:
# a comment line
";

    #[test]
    fn members_cases() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("docker", Some(&["gitlab-runner", "admin"])),
            ("sudo", Some(&["admin"])),
            ("gitlab-runner", Some(&[])),
            ("root", Some(&[])),
            ("podman", None),
            ("dock", None),
            ("x", None),
        ];
        for (group, expected) in cases {
            let expected = expected.map(|m| m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(members(GROUP, group), expected, "{group}");
        }
    }

    #[test]
    fn group_has_its_gid() {
        let docker = group(GROUP, "docker").expect("docker group");
        assert_eq!(docker.gid, 998);
        assert_eq!(docker.members, vec!["gitlab-runner", "admin"]);
        assert_eq!(group("docker:x:notanumber:a\n", "docker"), None);
    }

    #[test]
    fn odd_lines() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("docker:x:998", Some(&[])),
            ("docker:x:998:a,,b,\n", Some(&["a", "b"])),
            ("docker:x:998:a\r\n", Some(&["a"])),
            ("", None),
        ];
        for (text, expected) in cases {
            let expected = expected.map(|m| m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(members(text, "docker"), expected, "{text:?}");
        }
    }
}
