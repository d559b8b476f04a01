"""allele.kernel.sdk: tools for plugin authors (scaffold, build, test helpers).

The library a plugin imports inside its component is `allele_guest`, under
`guest/`; it is plain Python and is bundled into every build.
"""
