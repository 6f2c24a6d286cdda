"""The project admin's pages under /projects/<id>/manage/: settings, taxonomy, people, import, export, audit.

Views, forms and URLs together; the writes they call live in annotation/services/.
"""
