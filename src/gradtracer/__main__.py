"""``python -m gradtracer`` runs the command line."""

from gradtracer.cli import run

if __name__ == "__main__":
    run()
