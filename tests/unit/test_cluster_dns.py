"""The cluster's CoreDNS is built with only the plugins of tools/versions.env; its Corefile
(deploy/cluster/configs.py) must use no other, or CoreDNS refuses to start."""

from __future__ import annotations

from deploy.cluster import configs, images


def built_plugins() -> set[str]:
    return set(images.pinned("COREDNS_PLUGINS").split())


def corefile_directives() -> set[str]:
    manifest = configs.coredns_manifest("coredns:test")
    corefile = manifest.split("Corefile: |\n", 1)[1].split("---", 1)[0]
    directives, depth = set(), 0
    for line in corefile.splitlines():
        words = line.split()
        if depth == 1 and words and words[0] != "}":
            directives.add(words[0])  # a plugin's own block (kubernetes { pods ... }) is deeper
        depth += line.count("{") - line.count("}")
    return directives


def test_the_corefile_uses_only_plugins_coredns_is_built_with() -> None:
    directives = corefile_directives()
    assert {"kubernetes", "errors", "health", "ready"} <= directives
    assert directives <= built_plugins(), directives - built_plugins()
