"""The labeling domain: projects, members and roles, taxonomies, documents and imports, the review queue and
leases, annotations, legal-review flags, the audit log, and the project admin's pages (annotation/manage/)."""
