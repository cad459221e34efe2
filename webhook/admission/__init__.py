"""One admission, end to end and pure: the AdmissionReview wire types, decoding the request,
the answer to a pod (plain or memoised) and ``admit``. Imports only webhook.core."""
