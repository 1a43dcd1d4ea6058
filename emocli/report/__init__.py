"""What people read: result lines and tables, metrics, annotated video and plots."""
