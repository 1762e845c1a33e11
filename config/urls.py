from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tasks import views as task_views

api_v1 = [
    path("", include("crowdfund.accounts.urls")),
    path("", include("crowdfund.campaigns.urls")),
    path("", include("crowdfund.pledges.urls")),
    path("", include("crowdfund.notifications.urls")),
    path("", include("crowdfund.payments.urls")),
    path("", include("crowdfund.reports.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", task_views.health, name="health"),
    path("metrics", task_views.metrics, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

# Errors outside the API views (an unknown URL, a malformed id in a path) in the API's format too.
handler404 = "crowdfund.common.api.json_not_found"
handler500 = "crowdfund.common.api.json_server_error"
