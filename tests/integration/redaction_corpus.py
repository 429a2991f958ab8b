"""The redaction corpus: credential shapes that must never leave, and harmless values taken from
real endpoints that must not be hidden (tests/integration/test_redaction_corpus.py).

Each credential is (environment variable name, value, the part that must never be seen, source).
Most names say nothing (the value alone must give it away); a few are the names today's rules
missed (PASSWD, DB_PASS, OPENAI_APIKEY). Sources: the issue that asked for this (#12), the test
data of detect-secrets' own plugins (Yelp/detect-secrets tests/plugins/*_test.py), and the
Databricks token shapes (google/osv-scalibr#1720, #1721). Values are made up in those shapes.

Harmless values come from the real captures in shared/reference/real-api/ (endpoint ids, Unity
Catalog names, endpoint and served entity names, creators) and from what agents' environment
variables hold (MLFLOW_EXPERIMENT_ID, URLs without passwords, numbers, booleans, versions).
"""

from __future__ import annotations

PEM_BODY = "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIy"
       "fQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
AZURE_KEY = "lJzRc1YdHaAA2KCNJJ1tkYwF/+mKK6Ygw0NGe170Xu592euJv2wYUtBlV8z+qnlcNQSnIYVTkLWntUO1F8j8rQ=="


def pem(kind: str) -> str:
    return f"-----BEGIN {kind}-----\n{PEM_BODY}\n-----END {kind}-----"


CREDENTIALS: list[tuple[str, str, str, str]] = [
    # -- the list
    ("DB_CONFIG_JSON", '{"user": "app", "password": "Tr0ub4dor&3-json"}', "Tr0ub4dor&3-json", "issue #12"),
    ("ORDERS_JDBC_URL", "jdbc:postgresql://db.internal:5432/orders?user=app&password=Tr0ub4dor3jdbc",
     "Tr0ub4dor3jdbc", "issue #12"),
    ("SQLSERVER_CONN", "Server=tcp:orders.database.windows.net,1433;Database=orders;User ID=app;"
                       "Password=Tr0ub4dor3mssql;Encrypt=true", "Tr0ub4dor3mssql", "issue #12"),
    ("ODBC_DSN", "Driver={ODBC Driver 18};Server=db;Uid=app;Pwd=Tr0ub4dor3odbc;", "Tr0ub4dor3odbc", "issue #12"),
    ("BLOB_STORAGE", f"DefaultEndpointsProtocol=https;AccountName=agentlogs;AccountKey={AZURE_KEY};"
                     "EndpointSuffix=core.windows.net", AZURE_KEY[:40], "issue #12, azure_storage_key_test"),
    ("SIGNING_KEY_PEM", pem("RSA PRIVATE KEY"), PEM_BODY, "issue #12, private_key_test"),
    ("PASSWD", "correct-horse-battery", "correct-horse-battery", "issue #12"),
    ("DB_PASS", "staple-4-horse", "staple-4-horse", "issue #12"),
    ("OPENAI_APIKEY", "plainkeywithoutprefix42", "plainkeywithoutprefix42", "issue #12"),
    ("SP_OAUTH", "dose" + "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e", "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e", "issue #12, osv-scalibr#1721"),
    ("UPSTREAM_PAT", "dapi" + "0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef", "osv-scalibr#1720"),
    ("AZURE_PAT", "dapi" + "fedcba9876543210fedcba9876543210-3", "fedcba9876543210fedcba9876543210", "osv-scalibr#1720"),
    ("MONGO_URL", "mongodb+srv://agent:Tr0ub4dor3mongo@cluster0.example.net/app", "Tr0ub4dor3mongo", "basic_auth_test"),
    ("REDIS_URL", "redis://default:Tr0ub4dor3redis@cache.internal:6379/0", "Tr0ub4dor3redis", "basic_auth_test"),
    ("PROXY", "https://username:Tr0ub4dor3proxy@proxy.example.com:8443", "Tr0ub4dor3proxy", "basic_auth_test"),
    ("LLM_AUTH_HEADER", "Bearer sk-live-4f9c2a7e1b3d5f7a9c1e3b5d7f9a2c4e6b8d", "4f9c2a7e1b3d5f7a9c1e3b5d7f9a2c4e",
     "terms.CREDENTIAL_VALUE"),
    # -- detect-secrets' own test data, by plugin
    ("AWS_ID", "AKIAZZZZZZZZZZZZZZZZ", "AKIAZZZZZZZZZZZZZZZZ", "aws_key_test"),
    ("AWS_ID_2", "A3T0ZZZZZZZZZZZZZZZZ", "A3T0ZZZZZZZZZZZZZZZZ", "aws_key_test"),
    ("AWS_ID_3", "ASIAZZZZZZZZZZZZZZZZ", "ASIAZZZZZZZZZZZZZZZZ", "aws_key_test"),
    ("AWS_BOTH", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE", "wJalrXUtnFEMI/K7MDENG",
     "aws_key_test"),
    ("AZURE_KEY_ONLY", f"AccountKey={AZURE_KEY}", AZURE_KEY[:40], "azure_storage_key_test"),
    ("SERVICE_URL", "https://username:password@yelp.com", "username:password", "basic_auth_test"),
    ("GH", "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", "wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx", "github_token_test"),
    ("GH_FINE", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
     "11ABCDEFG0123456789_abcdefghijkl", "terms.CREDENTIAL_VALUE"),
    ("GL", "glpat-hellOworld380_testin", "hellOworld380_testin", "gitlab_token_test"),
    ("GL_DEPLOY", "gldt-HwllOuhfw-wu0rlD_yep", "HwllOuhfw-wu0rlD_yep", "gitlab_token_test"),
    ("GL_SA", "glsoat-PREfix_helloworld380_testin_pretty_long_token_long", "PREfix_helloworld380_testin",
     "gitlab_token_test"),
    ("GL_RUNNER", "GR1348941PREfix_helloworld380", "GR1348941PREfix_helloworld380", "gitlab_token_test"),
    ("IDENTITY", JWT, JWT[40:80], "jwt_test"),
    ("IDENTITY_2", "eyJ0eXAiOiJKV1QiLA0KImFsZyI6IkhTMjU2In0.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
                   "IjoxNTE2MjM5MDIyfQ", "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6", "jwt_test"),
    ("IDENTITY_3", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJuYW1lIjoiSm9lIiwKInN0YXR1cyI6ImVtcGxveWVlIgp9",
     "eyJuYW1lIjoiSm9lIiwKInN0YXR1cyI6", "jwt_test"),
    ("LLM", "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", "Xi8tcNiHV9awbCcvilTeT3BlbkFJ", "openai_test"),
    ("LLM_PROJECT", "sk-proj-Xi8tdMjHV6pmbBbwilTeT3BlbkFJ3UDnpdEwNNm6wVBpYM0o", "Xi8tdMjHV6pmbBbwilTeT3Blbk",
     "openai_test"),
    ("EC_PEM", pem("EC PRIVATE KEY"), PEM_BODY, "private_key_test"),
    ("DSA_PEM", pem("DSA PRIVATE KEY"), PEM_BODY, "private_key_test"),
    ("SSH_PEM", pem("OPENSSH PRIVATE KEY"), PEM_BODY, "private_key_test"),
    ("PKCS8_PEM", pem("PRIVATE KEY"), PEM_BODY, "private_key_test"),
    ("PGP_BLOCK", pem("PGP PRIVATE KEY BLOCK"), PEM_BODY, "private_key_test"),
    ("SLACK_BOT", "xoxb-34532454-e039d02840a0b9379c", "e039d02840a0b9379c", "slack_test"),
    ("SLACK_USER", "xoxp-523423-234243-234233-e039d02840a0b9379c", "234233-e039d02840a0b9379c", "slack_test"),
    ("SLACK_APP", "xoxa-2-511111111-31111111111-3111111111111-e039d02840a0b9379c", "3111111111111-e039d028",
     "slack_test"),
    ("SLACK_HOOK", "https://hooks.slack.com/services/TABCDEFGH/BABCDEFGH/aBcDeFgHiJkLmNoPqRsTuVwX",
     "aBcDeFgHiJkLmNoPqRsTuVwX", "slack_test"),
    ("PAYMENTS", "sk_live_ReTllpYQYfIZu2Jnf2lAPFjD", "ReTllpYQYfIZu2Jnf2lAPFjD", "stripe_key_test"),
    ("PAYMENTS_RESTRICTED", "rk_live_5TcWfjKmJgpql9hjpRnwRXbT", "5TcWfjKmJgpql9hjpRnwRXbT", "stripe_key_test"),
    ("MAIL", "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", "TwL2iGABf9DHoTf-09kqeF8t",
     "sendgrid_test"),
    ("SMS", "SK" + "a1b2c3d4e5f60718293a4b5c6d7e8f90", "SKa1b2c3d4e5f60718293a4b5c6d7e8f90", "twilio_test"),
    ("NPMRC", "//registry.npmjs.org/:_authToken=743b294a-cd03-11ec-9d64-0242ac120002",
     "743b294a-cd03-11ec-9d64-0242ac120002", "npm_test"),
    ("UPLOAD", "pypi-AgEIcHlwaS5vcmcCJDU3OTM1MjliLWIyYTYtNDEwOC05NzRkLTM0MjNiNmEwNWIzYgACF1sxLFsitesttestbWluaW1hbC1wcm"
               "9qZWN0Il1dAAIsWzIsWyJjYWY4OTAwZi0xNDMwLTRiYQstYmFmMi1mMDE3OGIyNWZhNTkiXV0AAAYgh2UINPjWBDwT0r3tQ1o5oZy"
               "swcjN0-IluP6z34SX3KM", "AgEIcHlwaS5vcmcCJDU3OTM1MjliLWIy", "pypi_token_test"),
    ("CHAT_BOT", "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs", "ZnCjm1XVW7vRze4b7Cq4se7kKWs",
     "discord_test"),
    ("CHAT_BOT_2", "OTUyNED5MDk2MTMxNzc2MkEz.GSroKE.g2MTwve8OnUAAByz8KV_ZTV1Ipzg4o_NmQWUMs",
     "g2MTwve8OnUAAByz8KV_ZTV1Ipzg4o", "discord_test"),
    ("TG", "110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw", "AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw",
     "telegram_token_test"),
    ("NEWSLETTER", "343ea45721923ed956e2b38c31db76aa-us30", "343ea45721923ed956e2b38c31db76aa", "mailchimp_key_test"),
    ("ARTIFACTS", "X-JFrog-Art-Api: AKCp8jQ8aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcdefghijklmnopqrstuvwxyzABCD",
     "AKCp8jQ8aBcDeFgHiJkLmNoPqRsTuVwXyZ0123", "artifactory_test"),
    ("POS", "sq0csp-ABCDEFGHIJK_LMNOPQRSTUVWXYZ-0123456789abcd", "ABCDEFGHIJK_LMNOPQRSTUVWXYZ", "square_oauth_test"),
    ("GOOGLE", "AIza" + "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
     "terms.CREDENTIAL_VALUE"),
    # keyword_test: a credential-named key inside the value (the name says nothing)
    ("APP_SETTINGS", "password = value with quotes and spaces", "value with quotes and spaces", "keyword_test"),
    ("APP_SETTINGS_2", "apikey = m{{h}o)p${e]nob(ody[finds>-_$#thisone}}", "nob(ody[finds>-_$#thisone",
     "keyword_test"),
    ("APP_SETTINGS_3", "db_pass: m{{h}o)p${e]nob(ody[finds>-_$#thisone}},", "nob(ody[finds>-_$#thisone",
     "keyword_test"),
    ("APP_SETTINGS_4", "private_key: Zq8rT2mN5vXy7TbK3pWs9HdJ", "Zq8rT2mN5vXy7TbK3pWs9HdJ", "keyword_test"),
    ("APP_SETTINGS_5", "secret: Hq3mR8pZ2vWx6TbN4kLs7YdF", "Hq3mR8pZ2vWx6TbN4kLs7YdF", "keyword_test"),
    # base64 high entropy (an unnamed random key)
    ("SEARCH", "q8Zr2LmN5vXy7TbK3pWs9HdJ4fGc6Ra1Ue0Yt", "q8Zr2LmN5vXy7TbK3pWs9HdJ4fGc6", "high_entropy_strings_test"),
    ("CACHE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "aws_key_test (secret)"),
    # today's name rules, kept
    ("OPENAI_API_KEY", "anything-at-all-123", "anything-at-all-123", "terms.SECRET_LOOKING_NAME"),
    ("GRAPH_TOKEN", "opaque-value-7788", "opaque-value-7788", "terms.SECRET_LOOKING_NAME"),
    ("CLIENT_SECRET", "also-opaque-9911", "also-opaque-9911", "terms.SECRET_LOOKING_NAME"),
    ("ADMIN_PASSWORD", "Summer2024!", "Summer2024!", "terms.SECRET_LOOKING_NAME"),
]

HARMLESS: list[tuple[str, str, str]] = [
    # endpoint ids (endpoint_get_01.json, endpoint_list_01.json)
    ("ENDPOINT_ID", "08f9f293f47247588069fa4e4e61a9be", "real-api endpoint id"),
    ("UPSTREAM_ENDPOINT_ID", "13cd11fdfd6f441c99e25de0d58b14e5", "real-api endpoint id"),
    ("FALLBACK_ENDPOINT_ID", "d95d79305bd94384b8b71a42e148acf4", "real-api endpoint id"),
    ("MLFLOW_RUN_ID", "cf9f57756bd14829b7b356062d7286ee", "hex like a run id"),
    # UUIDs (service principal application ids)
    ("SP_APPLICATION_ID", "6afd3ca0-9008-4fc4-a14b-e4cd91672435", "uuid"),
    ("TRACE_DESTINATION_ID", "b04f2e2f-7b58-43f2-9193-2dcd5fa567dc", "uuid"),
    ("TENANT_ID", "2938319d-953c-40f5-919f-2f3bf944a68a", "uuid"),
    # MLFLOW_EXPERIMENT_ID and other numbers
    ("MLFLOW_EXPERIMENT_ID", "3141592653589793", "experiment id"),
    ("MLFLOW_EXPERIMENT_ID_2", "7405614800873570", "experiment id (workspace id in real-api names)"),
    ("MAX_TOKENS", "1024", "number"),
    ("TEMPERATURE", "0.2", "number"),
    # Unity Catalog names (uc_model_get_02.json, endpoint entity names)
    ("VECTOR_SEARCH_INDEX", "main.agents.docs_index", "uc name"),
    ("FEATURE_SPEC", "reggie_pierce_7405614800873570.lensiq.lensiq_license_plate", "real-api entity name"),
    ("EMBEDDING_MODEL", "system.ai.gte_large_en_v1_5", "real-api entity name"),
    ("RERANKER", "system.ai.databricks-claude-sonnet-4-5", "real-api entity name"),
    ("DEFAULT_TABLE", "catalog_name.schema_name.feature_spec_name", "real-api entity name"),
    # endpoint and served entity names
    ("LLM_ENDPOINT_NAME", "databricks-meta-llama-3-3-70b-instruct", "real-api endpoint name"),
    ("EMBEDDINGS_ENDPOINT", "databricks-qwen3-embedding-0-6b", "real-api endpoint name"),
    ("JUDGE_ENDPOINT", "databricks-qwen3-next-80b-a3b-instruct", "real-api endpoint name"),
    ("SERVED_ENTITY", "dev_dsmodel_dev_guest_promise_time_v2-2", "real-api served entity name"),
    # URLs without passwords, e-mails, paths
    ("DATABRICKS_HOST", "https://adb-7405614800873570.10.azuredatabricks.net", "workspace url"),
    ("DOCS_URL", "https://agent@docs.example.com/x", "url with a user and no password"),
    ("ORDERS_DB_URL", "postgresql://db.internal:5432/orders", "url with a port, no user"),
    ("WEBHOOK", "https://hooks.example.com/agents/support/notify", "url"),
    ("ARTIFACT_PATH", "s3://agents-artifacts/support/2024-05-01/model", "s3 path"),
    ("OWNER", "reggie.pierce@databricks.com", "real-api creator"),
    ("NOTEBOOK", "/Workspace/Users/customer@example.com/agents/support", "workspace path"),
    # booleans, versions, plain settings
    ("ENABLE_MLFLOW_TRACING", "true", "boolean"),
    ("STREAMING", "false", "boolean"),
    ("AGENT_VERSION", "1.4.2", "version"),
    ("MLFLOW_VERSION", "3.1.0rc1", "version"),
    ("LANGCHAIN_VERSION", "0.3.25", "version"),
    ("LOG_LEVEL", "INFO", "setting"),
    ("REGION", "us-east-1", "setting"),
    ("TIMEZONE", "Europe/Amsterdam", "setting"),
    ("GENERATION_CONFIG", '{"temperature": 0.2, "max_tokens": 512}', "json setting"),
    ("SYSTEM_PROMPT", "You are a helpful support agent for Acme. Answer briefly.", "prose"),
    ("PWD", "/app", "the working directory, not a password"),
]
