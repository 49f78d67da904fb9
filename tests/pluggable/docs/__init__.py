"""A small content app that is not the blog: documentation pages with a parent/child hierarchy, published
through publishqueue (its own site model, archive types and dependency rules). The wheel test installs
it beside the mtdispatch wheel in a new project, to prove publishqueue serves any content app."""
