from tertulia.cli import app

# Guarded: worker processes started with "spawn" import this module too.
if __name__ == "__main__":
    app()
