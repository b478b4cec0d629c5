// Lets a folder with no sources yet still build a library target.
