from django.conf import settings


def sign_in(request) -> dict:
    """The single sign-on provider's name for the sign-in page, when one is configured."""
    return {"oidc_provider_name": settings.OIDC_PROVIDER_NAME if settings.OIDC_RP_CLIENT_ID else ""}
