"""WhatsApp message templates and the webhooks about them, as Meta documents them.

Sources:
- The template list (`GET /{waba-id}/message_templates`): developers.facebook.com/docs/graph-api/
  reference/whats-app-business-account/message_templates/ (its sample response: `data` with each
  template's name, components, language, status, category and id; `paging.cursors.before/after`,
  and `paging.next` while there are more pages). ORDER_DELIVERY_UPDATE is that sample's template
  verbatim; the others follow it (assembled), with `parameter_format` and `quality_score` as the
  template node's reference lists them (developers.facebook.com/docs/graph-api/reference/
  whats-app-business-hsm) and the named-parameter body of the Templates overview
  (developers.facebook.com/docs/whatsapp/business-management-api/message-templates, "Named
  parameters": "Thank you, {{first_name}}! Your order number is {{order_number}}.").
- SPRING_SALE (kept out of TEMPLATES, which other tests count): a NAMED template with a named text
  header, whose header is the example of Meta's template components reference
  (developers.facebook.com/documentation/business-messaging/whatsapp/templates/components, "Text
  header", named parameter syntax: "Our new sale starts {{sale_start_date}}!" with
  `header_text_named_params`); its body follows the same page's named body syntax
  (`body_text_named_params`). Sent, each value goes as `{"type": "text", "parameter_name": ...,
  "text": ...}` in the component that uses it (../shared/reference/channels.md §3.3).
- STATUS_APPROVED, STATUS_REJECTED: the two examples of the message_template_status_update webhook
  reference (developers.facebook.com/docs/whatsapp/business-management-api/webhooks/components,
  field message_template_status_update), verbatim (the REJECTED example's missing comma restored).
  STATUS_PAUSED and STATUS_DISABLED follow its syntax with `other_info` and `disable_info`.
- CATEGORY_CHANGED, CATEGORY_IMPENDING: the two examples of the template_category_update reference.
- QUALITY_THROUGHPUT: the example of the phone_number_quality_update reference; QUALITY_FLAGGED
  follows its syntax with the FLAGGED event and `max_daily_conversations_per_business`.
- PROMO_PHOTO and INVOICE (kept out of TEMPLATES): headers that are a file, following the media
  header template of Meta's "Template media" page (developers.facebook.com/documentation/
  business-messaging/whatsapp/templates/template-media: a HEADER component with `format` IMAGE and
  its `example.header_handle`; INVOICE the same with DOCUMENT), each with a positional body.
"""

from typing import Any

from tests.channels.whatsapp_samples import BUSINESS_ACCOUNT_ID

ORDER_DELIVERY_UPDATE: dict[str, Any] = {
    "name": "order_delivery_update",
    "components": [
        {"type": "HEADER", "format": "LOCATION"},
        {
            "type": "BODY",
            "text": "Good news {{1}}! Your order #{{2}} is on its way to the location above. Thank you for your order!",
            "example": {"body_text": [["Mark", "566701"]]},
        },
        {"type": "FOOTER", "text": "To stop receiving delivery updates, tap the button below."},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop Delivery Updates"}]},
    ],
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "id": "1667192013751005",
}

SEGUIMIENTO: dict[str, Any] = {
    "name": "seguimiento_pedido",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Pedido {{1}}", "example": {"header_text": ["#42"]}},
        {
            "type": "BODY",
            "text": "Hola {{1}}, tu pedido llega el {{2}}.",
            "example": {"body_text": [["Pablo", "lunes"]]},
        },
        {"type": "FOOTER", "text": "Tienda Tertulia"},
    ],
    "language": "es_MX",
    "status": "APPROVED",
    "category": "UTILITY",
    "quality_score": {"score": "GREEN", "date": 1764950000},
    "id": "730512345678901",
}

ORDER_CONFIRMATION: dict[str, Any] = {
    "name": "order_confirmation",
    "parameter_format": "NAMED",
    "components": [
        {
            "type": "BODY",
            "text": "Thank you, {{first_name}}! Your order number is {{order_number}}.",
            "example": {
                "body_text_named_params": [
                    {"param_name": "first_name", "example": "Pablo"},
                    {"param_name": "order_number", "example": "860198-230332"},
                ]
            },
        }
    ],
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "id": "1689556908129832",
}

ABANDONED_CART: dict[str, Any] = {
    "name": "abandoned_cart",
    "parameter_format": "POSITIONAL",
    "components": [{"type": "BODY", "text": "¿Olvidaste algo, {{1}}?"}],
    "language": "en",
    "status": "PENDING",
    "category": "MARKETING",
    "id": "1689556908129835",
}

WELCOME: dict[str, Any] = {
    "name": "welcome_template",
    "components": [{"type": "BODY", "text": "¡Bienvenida a Tertulia!"}],
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "id": "278077987957091",
}

TEMPLATES = [ORDER_DELIVERY_UPDATE, SEGUIMIENTO, ORDER_CONFIRMATION, ABANDONED_CART, WELCOME]

SPRING_SALE: dict[str, Any] = {
    "name": "spring_sale",
    "parameter_format": "NAMED",
    "components": [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Our new sale starts {{sale_start_date}}!",
            "example": {"header_text_named_params": [{"param_name": "sale_start_date", "example": "December 1st"}]},
        },
        {
            "type": "BODY",
            "text": "Hi {{first_name}}, use code {{discount_code}} at checkout.",
            "example": {
                "body_text_named_params": [
                    {"param_name": "first_name", "example": "Pablo"},
                    {"param_name": "discount_code", "example": "SPRING25"},
                ]
            },
        },
        {"type": "FOOTER", "text": "Terms and conditions apply"},
    ],
    "language": "en_US",
    "status": "APPROVED",
    "category": "MARKETING",
    "id": "1689556908129840",
}


def _account(field: str, value: dict[str, Any], time: int = 1751247548) -> dict[str, Any]:
    return {
        "entry": [{"id": BUSINESS_ACCOUNT_ID, "time": time, "changes": [{"value": value, "field": field}]}],
        "object": "whatsapp_business_account",
    }


PROMO_PHOTO: dict[str, Any] = {
    "name": "promo_foto",
    "parameter_format": "POSITIONAL",
    "components": [
        {
            "type": "HEADER",
            "format": "IMAGE",
            "example": {"header_handle": ["4::aW1hZ2UvanBlZw==:ARa1ZDhwbLZM3EENeeg"]},
        },
        {
            "type": "BODY",
            "text": "Hola {{1}}, esta semana tienes 20% en toda la tienda.",
            "example": {"body_text": [["Ana"]]},
        },
    ],
    "language": "es_MX",
    "status": "APPROVED",
    "category": "MARKETING",
    "id": "991200000000001",
}

INVOICE: dict[str, Any] = {
    "name": "factura_lista",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "DOCUMENT", "example": {"header_handle": ["4::YXBwbGljYXRpb24vcGRm:ARbD"]}},
        {"type": "BODY", "text": "Tu factura {{1}} está lista.", "example": {"body_text": [["F-1"]]}},
    ],
    "language": "es_MX",
    "status": "APPROVED",
    "category": "UTILITY",
    "id": "991200000000002",
}

STATUS_APPROVED = _account(
    "message_template_status_update",
    {
        "event": "APPROVED",
        "message_template_id": 1689556908129835,
        "message_template_name": "abandoned_cart",
        "message_template_language": "en",
        "reason": "NONE",
        "message_template_category": "MARKETING",
    },
)

STATUS_REJECTED = _account(
    "message_template_status_update",
    {
        "event": "REJECTED",
        "message_template_id": 1689556908129835,
        "message_template_name": "abandoned_cart",
        "message_template_language": "en",
        "reason": "INVALID_FORMAT",
        "message_template_category": "MARKETING",
        "rejection_info": {
            "reason": "Your template has parameters placed next to each other (like {{1}}{{2}}) without text or "
            "punctuation between them.",
            "recommendation": "Separate parameters with descriptive text and ensure each parameter is clearly "
            "contextualized.",
        },
    },
)

STATUS_PAUSED = _account(
    "message_template_status_update",
    {
        "event": "PAUSED",
        "message_template_id": 730512345678901,
        "message_template_name": "seguimiento_pedido",
        "message_template_language": "es-MX",
        "reason": "NONE",
        "message_template_category": "UTILITY",
        "other_info": {"title": "FIRST_PAUSE", "description": "Your WhatsApp message template has been paused."},
    },
)

STATUS_DISABLED = _account(
    "message_template_status_update",
    {
        "event": "DISABLED",
        "message_template_id": 730512345678901,
        "message_template_name": "seguimiento_pedido",
        "message_template_language": "es-MX",
        "reason": None,
        "message_template_category": "UTILITY",
        "disable_info": {"disable_date": "1751234563"},
    },
    time=1751247999,
)

CATEGORY_IMPENDING = {
    "entry": [
        {
            "id": BUSINESS_ACCOUNT_ID,
            "time": 1746082800,
            "changes": [
                {
                    "field": "template_category_update",
                    "value": {
                        "message_template_id": 278077987957091,
                        "message_template_name": "welcome_template",
                        "message_template_language": "en-US",
                        "new_category": "UTILITY",
                        "correct_category": "MARKETING",
                        "category_update_timestamp": 1746169200,
                    },
                }
            ],
        }
    ],
    "object": "whatsapp_business_account",
}

CATEGORY_CHANGED = {
    "entry": [
        {
            "id": BUSINESS_ACCOUNT_ID,
            "time": 1746169200,
            "changes": [
                {
                    "field": "template_category_update",
                    "value": {
                        "message_template_id": 278077987957091,
                        "message_template_name": "welcome_template",
                        "message_template_language": "en-US",
                        "previous_category": "UTILITY",
                        "new_category": "MARKETING",
                    },
                }
            ],
        }
    ],
    "object": "whatsapp_business_account",
}

QUALITY_THROUGHPUT = {
    "entry": [
        {
            "id": BUSINESS_ACCOUNT_ID,
            "time": 1748454394,
            "changes": [
                {
                    "value": {
                        "display_phone_number": "15550783881",
                        "event": "THROUGHPUT_UPGRADE",
                        "current_limit": "TIER_UNLIMITED",
                    },
                    "field": "phone_number_quality_update",
                }
            ],
        }
    ],
    "object": "whatsapp_business_account",
}

QUALITY_FLAGGED = _account(
    "phone_number_quality_update",
    {
        "display_phone_number": "15550783881",
        "event": "FLAGGED",
        "current_limit": "TIER_2K",
        "max_daily_conversations_per_business": "TIER_2K",
    },
    time=1748454000,
)
