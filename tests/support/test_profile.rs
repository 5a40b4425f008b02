//! The profile the real-host and VM tiers run with: the default profile's
//! settings, gitlab-runner from a local repository (no network, no key), and
//! the docker group's risk accepted. One text for both tiers; each names
//! its repository, GitLab URL, runner name and how long Docker may take.

/// The profile as a `&'static str`, so a tier keeps it in a `const`.
macro_rules! test_profile {
    (
        description: $description:literal,
        url: $url:literal,
        name: $name:literal,
        repository: $repository:literal,
        verify_timeout: $verify_timeout:literal $(,)?
    ) => {
        concat!(
            "description = \"",
            $description,
            "\"\n\n[runner]\nurl = \"",
            $url,
            "\"\nname = \"",
            $name,
            "\"\nexecutor = \"shell\"\ntags = []\ninstall = \"package-repo\"\n\n[runner.repository]\nuri = \"",
            $repository,
            "\"\nsuite = \"./\"\ncomponents = \"\"\nkey_url = \"\"\n\n[docker]\nsource = \"distro\"\ngroup_members = [\"gitlab-runner\"]\naccept_group_risk = true\nstorage_driver = \"overlay2\"\nverify_timeout = ",
            $verify_timeout,
            "\n\n[kernel]\nmodules = [\"overlay\"]\n"
        )
    };
}
