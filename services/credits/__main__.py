"""`python -m services.credits [serve|migrate]`."""

from libs.common.entrypoint import main
from services.credits.app import migrate, start
from services.credits.config import CreditsSettings

if __name__ == "__main__":
    settings = CreditsSettings()
    main("credits", settings, migrate, lambda: start(settings))
