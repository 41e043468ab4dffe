-- The seed products' pictures are the SVG drawings the web storefront serves
-- at /images/<name>.svg (the first seed named JPEGs that never existed).
-- Only rows still pointing at the old seed names change.
UPDATE products SET image_url = REPLACE(image_url, '.jpg', '.svg')
WHERE id BETWEEN 1 AND 5 AND image_url LIKE '/images/%.jpg';
