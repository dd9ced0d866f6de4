from tertulia.cli import app

app()
