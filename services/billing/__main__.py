"""`python -m services.billing [serve|migrate]`."""

from libs.common.entrypoint import main
from services.billing.app import migrate, start
from services.billing.config import BillingSettings

if __name__ == "__main__":
    settings = BillingSettings()
    main("billing", settings, migrate, lambda: start(settings))
