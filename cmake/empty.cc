// Placeholder so a library whose folder has no sources yet still builds.
