"""Review quality: agreement, overlap and gold reports, adjudication, likely label errors, the insights dashboard.

It reads `annotation` and `learning`; neither of them imports it.
"""
