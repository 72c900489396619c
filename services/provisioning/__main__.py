"""`python -m services.provisioning [serve|migrate]`."""

from libs.common.entrypoint import main
from services.provisioning.app import migrate, start
from services.provisioning.config import ProvisioningSettings

if __name__ == "__main__":
    settings = ProvisioningSettings()
    main("provisioning", settings, migrate, lambda: start(settings))
