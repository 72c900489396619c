"""`python -m services.pool [serve|migrate]`."""

from libs.common.entrypoint import main
from services.pool.app import migrate, start
from services.pool.config import PoolSettings

if __name__ == "__main__":
    settings = PoolSettings()
    main("pool", settings, migrate, lambda: start(settings))
