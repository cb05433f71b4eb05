{
    "name": "Behavioral Email - Back in Stock and Price Drop",
    "summary": "Email sequences started when a product a customer wanted is back in stock or costs less",
    "version": "18.0.1.0.0",
    "category": "Marketing/Email Marketing",
    "license": "LGPL-3",
    "author": "behavioral_email",
    "website": "https://github.com/behavioral-email/behavioral_email",
    "depends": ["behavioral_email", "website_sale_stock", "website_sale_wishlist"],
    "data": [
        "data/mailing_list_data.xml",
        "views/behavioral_email_block_templates.xml",
        "views/behavioral_email_snippets.xml",
        "views/behavioral_sequence_views.xml",
        "data/behavioral_sequence_back_in_stock_data.xml",
        "data/behavioral_sequence_price_drop_data.xml",
    ],
    "auto_install": True,
}
